"""Submissions (DataComp style): a run packed as data, verified by recomputation, ranked on a
leaderboard, and compared with a baseline for regression suites.

- :mod:`~delbench.submissions.format`: what a submission archive holds;
- :mod:`~delbench.submissions.pack`: ``delbench submit``;
- :mod:`~delbench.submissions.extract`: opening an archive safely, bounded;
- :mod:`~delbench.submissions.verify`: ``delbench verify`` (a run directory or a submission);
- :mod:`~delbench.submissions.leaderboard`: ``delbench leaderboard``;
- :mod:`~delbench.submissions.compare`: ``delbench compare``.
"""
from delbench.submissions.compare import Comparison, compare
from delbench.submissions.extract import extract_submission, open_submission
from delbench.submissions.format import MANIFEST_FILE, SUBMISSION_FORMAT
from delbench.submissions.leaderboard import leaderboard, render_leaderboard
from delbench.submissions.pack import submission_files, write_submission
from delbench.submissions.verify import Verification, check_settings, find_protocol_file, verify

__all__ = ["MANIFEST_FILE", "SUBMISSION_FORMAT", "Comparison", "Verification", "check_settings", "compare",
           "extract_submission", "find_protocol_file", "leaderboard", "open_submission", "render_leaderboard",
           "submission_files", "verify", "write_submission"]

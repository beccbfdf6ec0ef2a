"""Built-in selectors, one module per method family: baselines (full, random, stratified,
oracle), MedDEL, the SemDeDup family (SemDeDup, SSL prototypes, D4), geometric coresets,
difficulty ranking and model-free image filters."""

"""Built-in datasets: the synthetic endoscopy pool and downstream set, the public endoscopy
segmentation sets and pre-training pools, and any folder of images (``image_folder``)."""

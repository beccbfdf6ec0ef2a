"""Built-in backbones: ``timm_mae``, any timm ViT with a masked-autoencoder objective."""

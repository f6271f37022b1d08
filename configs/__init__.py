"""The bundled YAML presets, installed as the package lightning_trickster.configs so `--config nano.yaml` works anywhere."""

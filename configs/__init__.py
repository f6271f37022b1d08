"""The bundled YAML presets, installed as lightning_trickster.configs so `--config nano.yaml` works anywhere."""

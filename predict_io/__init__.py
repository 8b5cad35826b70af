"""predict.py's building blocks: reading its inputs (inputs.py), writing its outputs (outputs.py), its errors."""

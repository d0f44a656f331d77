"""The shared training machinery: devices, torch.distributed, the loop, checkpoints, weights and cards.

Import the modules themselves (``USGenLib.train.loop`` ...): this package file imports nothing, so
the CLI can name the device choices without importing torch.
"""

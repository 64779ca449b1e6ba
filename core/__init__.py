"""The shared foundation of every stage.

Photos in, atomic writes, model files, checkpoints, devices, config, backbones, crop geometry, defaults.
"""

"""ReferMo, the Long-RVOS baseline: codec motion (`motion`), and later the model, training and inference.

Nothing heavy is imported here: each module imports PyAV or torch when it is used.
"""

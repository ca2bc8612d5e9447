"""The network models, one module each; everything is about ONE network, vmapped outside.

* `constructed` -- linear networks built to satisfy the theorems' interpolation conditions.
* `linear` -- trained deep linear classifiers (section 6, Tables 1-2), PyTorch's layout and init.
* `relu` -- the same trained with ReLU activations (Theorem 7, Tables 3-4).
* `cnn` -- the paper's MNIST CNN in Flax (Tables 5-6), trained K at a time.
"""

"""The network models, one module each; everything is about ONE network, vmapped outside.

* `constructed` -- linear networks built to satisfy the theorems' interpolation conditions.
* `linear` -- trained deep linear classifiers (section 6, Tables 1-2), PyTorch's layout and init.
* `relu` -- the same trained with ReLU activations (Theorem 7, Tables 3-4).
* `cnn` -- the paper's MNIST CNN in Flax (Tables 5-6), trained K at a time.
* `onnx_graph` -- any ONNX graph as a pure JAX function (an interpreter over an op registry).
* `imagenet` -- ONNX image classifiers as functions of pixels in [0, 1]; demo photographs; class names.
* `export` -- pretrained models exported to ONNX once with PyTorch (`python -m jaxfrag.models export NAME`).
"""

"""TorchRay's ``torchray.attribution`` for the backpropagation methods (see :mod:`deconvlab.torchray`)."""

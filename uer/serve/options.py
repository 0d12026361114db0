"""The closed choices of ``uer serve``, in a leaf module: the command line reads them without the web stack."""

BATCHINGS = ("continuous", "plain")  # across requests per layer (classifiers) | collect, then predict() to completion

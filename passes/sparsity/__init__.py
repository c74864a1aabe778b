"""Sparsity passes: magnitude pruning of weights into unstructured, N:M and block patterns."""

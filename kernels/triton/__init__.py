"""Triton kernels of ramo (shipped as ramo.triton_kernels)."""

"""vidgen: one command line for the open video diffusion models in Hugging Face diffusers."""

__version__ = "0.1.0"

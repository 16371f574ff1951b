"""vidgen: one command line for the open video diffusion models in Hugging Face diffusers."""

__version__ = "0.1.0"

# Every family's own options are fields of the config schema (families.register adds them).
# Importing the registry with the package makes the schema the same whatever module a program
# imports first; it costs pydantic and the family declarations, never torch.
import vidgen.families  # noqa: E402, F401

"""Loading models: locating checkpoints, components and LoRAs, applying memory and speed options,
multi-GPU setup and the tiny random-weight models. Below running a job; above the families."""

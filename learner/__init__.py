"""learner: feedback intake, EWC-regularized incremental LoRA, the gate, versioned publishing."""

"""Models and their training: the architecture registry, training loops, victims, and
pretrained backbones. Import the submodules (they load torch)."""

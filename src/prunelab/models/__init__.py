"""Plain ``nn.Module`` models (no Lightning inside), sized from the data module.

Every constructor takes ``input_shape`` (C, H, W) and ``num_classes`` first; the YAML in conf/model/ gives the
rest. Classifier heads are named ``classifier`` (or end in it), so they can be excluded from pruning by pattern.
"""

"""What training and serving must agree on, with no torch and no onnxruntime: the bundle format
(`bundle`), how a photo is shown to the auto-mode classifier (`classifier_view`) and the auto-mode
rule that turns its probabilities into a decision (`auto_rule`), and the flat-region guard every
restoration goes through (`flat_guard`). `model`, `training` and `service`
all import it; `model` and `training` never import `service`.
"""

"""Model files for deployment: TorchScript, torch.export, ONNX (checked against the model), state dicts."""

from robustprune.deploy.formats import FORMATS, DeployError, check_onnx, save_model

__all__ = ["FORMATS", "DeployError", "check_onnx", "save_model"]

"""``backend.nn.base``: Forge's own ``ModuleDict`` is a plain ``torch.nn.Module`` that only calls ``add_module``
(no ``in``, no ``[name]``, no ``items()``: unlike ``torch.nn.ModuleDict``), and ``ObjectDict`` holds plain attributes."""

import torch


class ModuleDict(torch.nn.Module):
    def __init__(self, module_dict):
        super().__init__()
        for name, module in module_dict.items():
            self.add_module(name, module)


class ObjectDict:
    def __init__(self, module_dict):
        for name, module in module_dict.items():
            setattr(self, name, module)

"""Neo's (ComfyUI's) weight adapters: ``Adapter(loaded_keys, weights)``, ``calculate_weight(weight, key, strength,
strength_model, offset, function, intermediate_dtype)`` → the weight with the adapter's ΔW added. The ``weights``
tuples are Forge's patch tuples (LoRA's with a ``reshape`` at the end), so the fake forms ΔW with the same maths."""

import torch


class WeightAdapterBase:
    name = ""

    def __init__(self, loaded_keys, weights):
        self.loaded_keys = loaded_keys
        self.weights = weights

    def calculate_weight(
        self, weight, key, strength, strength_model, offset, function, intermediate_dtype=torch.float32, original=None
    ):
        from backend.patcher.lora import delta

        return weight + strength * delta(self.name, self.weights, weight.to(intermediate_dtype)).to(weight)


class LoRAAdapter(WeightAdapterBase):
    name = "lora"


class LoHaAdapter(WeightAdapterBase):
    name = "loha"


class LoKrAdapter(WeightAdapterBase):
    name = "lokr"

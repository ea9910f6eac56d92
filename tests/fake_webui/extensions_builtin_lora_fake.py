"""A fake of the WebUI's built-in Lora extension, as much as the Train Tools takeover depends on.

v1.10.1 behaviour kept: the ``networks`` module in ``sys.modules`` with
``loaded_networks`` and ``network_restore_weights_from_backup``; layer names from
``assign_network_names_to_compvis_modules`` (on_model_loaded); ``ExtraNetworkLora``
registered as ``lora`` + alias ``lyco`` in ``on_before_ui``; weights merged lazily
at each patched module's next forward by comparing ``network_current_names`` with
the wanted tuple, with a CPU backup taken the first time something is wanted and
restore-from-backup whenever the wanted tuple changes. (A1111 patches the classes'
forward; a per-module forward pre-hook has the same effect here.)
Only kohya LoRA (up/down/alpha) with ldm-style ``lora_unet_``/``lora_te_`` keys.
"""

import sys
import types
from pathlib import Path

import torch
from safetensors.torch import load_file

from modules import extra_networks, script_callbacks, shared

networks = types.ModuleType("networks")
networks.loaded_networks = []
networks.apply_count = 0  # merges done by the built-in (tests check it stays 0 while Train Tools owns lora)


class Network:
    def __init__(self, name, modules, te_multiplier, unet_multiplier):
        self.name = name
        self.modules = modules  # layer name → (up, down, scale)
        self.te_multiplier = te_multiplier
        self.unet_multiplier = unet_multiplier
        self.dyn_dim = None


def network_restore_weights_from_backup(module):
    """As v1.10.1's: the weight and the bias copied back in place (a bias backed up as None becomes None), with no
    ``no_grad`` of its own (its callers hold one)."""
    backup = getattr(module, "network_weights_backup", None)
    bias_backup = getattr(module, "network_bias_backup", None)
    if backup is None and bias_backup is None:
        return
    if backup is not None:
        module.weight.copy_(backup)
    if bias_backup is None:
        module.bias = None
    else:
        module.bias.copy_(bias_backup)


def network_apply_weights(module, _inputs=None):
    layer = getattr(module, "network_layer_name", None)
    if layer is None:
        return
    wanted = tuple((n.name, n.te_multiplier, n.unet_multiplier, n.dyn_dim) for n in networks.loaded_networks)
    current = getattr(module, "network_current_names", ())
    if getattr(module, "network_weights_backup", None) is None and wanted != ():
        if current != ():
            raise RuntimeError("no backup weights found and current weights are not unchanged")
        module.network_weights_backup = module.weight.detach().to("cpu", copy=True)
    if getattr(module, "network_bias_backup", None) is None and wanted != ():
        bias = getattr(module, "bias", None)
        module.network_bias_backup = None if bias is None else bias.detach().to("cpu", copy=True)
    if current == wanted:
        return
    with torch.no_grad():  # the WebUI runs this in its forward, under the generation's no_grad
        network_restore_weights_from_backup(module)
        for net in networks.loaded_networks:
            if layer in net.modules:
                up, down, scale = net.modules[layer]
                multiplier = net.te_multiplier if "transformer" in layer[:20] else net.unet_multiplier
                delta = (up.flatten(1) @ down.flatten(1)).reshape(module.weight.shape) * scale * multiplier
                module.weight += delta.to(module.weight.dtype)
                networks.apply_count += 1
    module.network_current_names = wanted


def assign_network_names_to_compvis_modules(sd_model):
    mapping = {}
    roots = [("diffusion_model_", sd_model.model.diffusion_model),
             ("", getattr(sd_model.cond_stage_model, "wrapped", sd_model.cond_stage_model))]
    for prefix, root in roots:
        for name, module in root.named_modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                layer = prefix + name.replace(".", "_")
                module.network_layer_name = layer
                mapping[layer] = module
                if not getattr(module, "_fake_builtin_hooked", False):
                    module.register_forward_pre_hook(network_apply_weights)
                    module._fake_builtin_hooked = True
    sd_model.network_layer_mapping = mapping


def _load(path):
    state = load_file(str(path))
    modules = {}
    for key in state:
        if key.endswith(".lora_down.weight"):
            prefix = key[: -len(".lora_down.weight")]
            down, up = state[key].float(), state[f"{prefix}.lora_up.weight"].float()
            alpha = state.get(f"{prefix}.alpha")
            scale = float(alpha) / down.shape[0] if alpha is not None else 1.0
            layer = prefix.replace("lora_unet_", "diffusion_model_").replace("lora_te_", "transformer_")
            modules[layer] = (up, down, scale)
    return modules


def load_networks(names, te_multipliers, unet_multipliers):
    networks.loaded_networks.clear()
    folder = Path(shared.cmd_opts.lora_dir)
    for name, te, unet in zip(names, te_multipliers, unet_multipliers):
        path = folder / f"{name}.safetensors"
        if path.is_file():
            networks.loaded_networks.append(Network(name, _load(path), te, unet))


class ExtraNetworkLora(extra_networks.ExtraNetwork):
    def __init__(self):
        super().__init__("lora")
        self.activations = 0

    def activate(self, p, params_list):
        self.activations += 1
        names = [params.positional[0] for params in params_list]
        te = [float(params.positional[1]) if len(params.positional) > 1 else 1.0 for params in params_list]
        unet = [float(params.positional[2]) if len(params.positional) > 2 else t for params, t in zip(params_list, te)]
        load_networks(names, te, unet)
        if networks.loaded_networks:
            p.extra_generation_params["Lora hashes"] = ", ".join(f"{n.name}: builtin" for n in networks.loaded_networks)

    def deactivate(self, p):
        pass


def before_ui():
    networks.extra_network_lora = ExtraNetworkLora()
    extra_networks.register_extra_network(networks.extra_network_lora)
    extra_networks.register_extra_network_alias(networks.extra_network_lora, "lyco")


networks.network_restore_weights_from_backup = network_restore_weights_from_backup
networks.network_apply_weights = network_apply_weights
networks.assign_network_names_to_compvis_modules = assign_network_names_to_compvis_modules
networks.load_networks = load_networks


def install():
    """Load the fake built-in the way the WebUI does: builtins first, so its callbacks come first; its options."""
    shared.opts.add_option("sd_lora", shared.OptionInfo("None", "Add network to prompt"))
    shared.opts.add_option("lora_add_hashes_to_infotext", shared.OptionInfo(True, "Add Lora hashes to infotext"))
    networks.loaded_networks.clear()
    networks.apply_count = 0
    sys.modules["networks"] = networks
    script_callbacks.on_model_loaded(assign_network_names_to_compvis_modules)
    script_callbacks.on_before_ui(before_ui)
    return networks

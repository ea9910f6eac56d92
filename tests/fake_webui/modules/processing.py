"""``modules.processing``: txt2img objects and ``process_images`` with the real extra-network flow.

Per v1.10.1: reload weights (honouring override_settings), parse the prompt's
extra networks, activate them unless ``disable_extra_networks``, compute conds,
sample, then deactivate. Sampling here is a plain Euler loop over
``shared.sd_model.apply_model``. Conds are cached as the WebUI caches them
(``get_conds_with_caching``): in the class-level lists ``cached_c``/``cached_uc``,
which every new processing object shares (``persistent_cond_cache``, on by
default), keyed by the prompt text and the token data — not by the files behind
``<lora:…>`` tokens.
"""

import json

import torch

from modules import extra_networks, sd_models, shared


class StableDiffusionProcessing:
    cached_c = [None, None]
    cached_uc = [None, None]

    def __init__(
        self,
        sd_model=None,
        prompt="",
        negative_prompt="",
        seed=-1,
        steps=20,
        cfg_scale=7.0,
        width=512,
        height=512,
        batch_size=1,
        n_iter=1,
        sampler_name=None,
        do_not_save_grid=False,
        do_not_save_samples=False,
        override_settings=None,
        **kwargs,
    ):
        self.sd_model = sd_model
        self.prompt = prompt
        self.negative_prompt = negative_prompt
        self.seed = seed
        self.steps = steps
        self.cfg_scale = cfg_scale
        self.width = width
        self.height = height
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.override_settings = override_settings or {}
        self.disable_extra_networks = False
        self.extra_generation_params = {}
        self.comments = {}
        self.extra_network_data = {}
        self.all_prompts = None
        self.cached_c = StableDiffusionProcessing.cached_c  # the WebUI's __post_init__: the shared lists
        self.cached_uc = StableDiffusionProcessing.cached_uc

    def get_conds_with_caching(self, function, required_prompts, steps, caches, extra_network_data, model=None):
        """The WebUI's cache: the result for the same parameters comes back without calling ``function``."""
        model = model or shared.sd_model
        checkpoint = getattr(model, "sd_checkpoint_info", model)
        params = (tuple(required_prompts), steps, checkpoint, extra_network_data, self.width, self.height)
        for cache in caches:
            if cache[0] is not None and cache[0] == params:
                return cache[1]
        cache = caches[0]
        cache[1] = function(required_prompts)
        cache[0] = params
        return cache[1]

    def comment(self, text):
        self.comments[text] = 1

    def close(self):
        """v1.10.1 has no ``__enter__``: the WebUI closes its objects with ``contextlib.closing``."""
        if not getattr(shared.opts, "persistent_cond_cache", True):
            StableDiffusionProcessing.cached_c = [None, None]
            StableDiffusionProcessing.cached_uc = [None, None]


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    cached_hr_c = [None, None]  # the hires pass's conditioning, shared the same way (read through the class)
    cached_hr_uc = [None, None]

    def close(self):
        super().close()
        if not getattr(shared.opts, "persistent_cond_cache", True):
            StableDiffusionProcessingTxt2Img.cached_hr_c = [None, None]
            StableDiffusionProcessingTxt2Img.cached_hr_uc = [None, None]


class Processed:
    def __init__(self, p, images, infotext=""):
        self.images = images
        self.seed = p.seed
        self.infotexts = [infotext] * len(images)
        self.comments = "".join(f"{k}: {v}\n" for k, v in p.comments.items())
        self.extra_generation_params = p.extra_generation_params  # the same dict, as in the WebUI

    def js(self):
        """The API's ``info`` (``/sdapi/v1/txt2img``): anything JSON cannot hold, a callable too, becomes null."""
        obj = {"seed": self.seed, "infotexts": self.infotexts, "extra_generation_params": self.extra_generation_params}
        return json.dumps(obj, default=lambda o: None)


process_log = []


def process_images(p):
    sd_models.reload_model_weights(info=p.override_settings.get("sd_model_checkpoint"))
    model = shared.sd_model
    prompts, p.extra_network_data = extra_networks.parse_prompts([p.prompt])
    p.all_prompts = prompts
    process_log.append({"prompt": prompts[0], "disable_extra_networks": p.disable_extra_networks})
    with torch.no_grad():
        if not p.disable_extra_networks:
            extra_networks.activate(p, p.extra_network_data)
        cond = learned_conditioning(p, model, prompts)
        x = initial_noise(p)
        x = euler_sample(lambda x_in, t: model.apply_model(x_in, t, cond), x, model.alphas_cumprod.float(), p.steps)
        decoded = model.decode_first_stage(x)
    if not p.disable_extra_networks and p.extra_network_data:
        extra_networks.deactivate(p, p.extra_network_data)
    return Processed(p, images_from(decoded), infotext_of(p))


# The fakes' conditioning and sampling, shared with the fake Forge / reForge (tests/forge.py).
def learned_conditioning(p, model, prompts):
    """``p.setup_conds()``: the model's conditioning for ``prompts``, through the WebUI's cache."""
    return p.get_conds_with_caching(
        lambda required: model.get_learned_conditioning(list(required) * p.batch_size),
        prompts,
        p.steps,
        [p.cached_c],
        p.extra_network_data,
        model,
    )


def initial_noise(p) -> torch.Tensor:
    generator = torch.Generator("cpu").manual_seed(int(p.seed))
    return torch.randn((p.batch_size, 4, p.height // 8, p.width // 8), generator=generator)


def euler_sample(predict_noise, x: torch.Tensor, alphas: torch.Tensor, steps: int) -> torch.Tensor:
    """Euler over ``steps`` evenly spaced timesteps; ``predict_noise(scaled x, timesteps)`` is the model's ε."""
    timesteps = torch.linspace(len(alphas) - 1, 0, steps).round().long()
    sigmas = ((1 - alphas) / alphas).sqrt()
    x = x * sigmas[timesteps[0]]
    for i, t in enumerate(timesteps):
        sigma = sigmas[t]
        eps = predict_noise(x / (sigma**2 + 1).sqrt(), t.expand(x.shape[0])).float()
        sigma_next = sigmas[timesteps[i + 1]] if i + 1 < len(timesteps) else torch.tensor(0.0)
        x = x + eps * (sigma_next - sigma)
    return x


def images_from(decoded: torch.Tensor) -> list:
    from PIL import Image

    pixels = ((decoded.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in pixels]


def infotext_of(p) -> str:
    params = {}
    for key, value in p.extra_generation_params.items():  # as create_infotext: callables get **locals()
        params[key] = value(p=p, index=0) if callable(value) else value
    return ", ".join(f"{k}: {v}" for k, v in params.items() if v is not None)


def create_infotext(
    p,
    all_prompts,
    all_seeds,
    all_subseeds,
    comments=None,
    iteration=0,
    position_in_batch=0,
    use_main_prompt=False,
    index=None,
    all_negative_prompts=None,
):
    """v1.10.1's signature and its handling of ``extra_generation_params``: a callable value is called with the
    function's ``**locals()``; ``None`` values are left out."""
    if use_main_prompt:
        index = 0
    elif index is None:
        index = position_in_batch + iteration * p.batch_size
    generation_params = {"Steps": p.steps, "Seed": all_seeds[index], **p.extra_generation_params}
    for key, value in generation_params.items():
        if isinstance(value, list):
            generation_params[key] = value[index]
        elif callable(value):
            generation_params[key] = value(**locals())
    text = ", ".join(f"{k}: {v}" for k, v in generation_params.items() if v is not None)
    return f"{all_prompts[index]}\n{text}".strip()

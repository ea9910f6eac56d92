"""``backend.args.dynamic_args``: what ``forge_model_reload`` hands the loader (storage dtype override…).

Forge: a dict. Neo: a class read by attribute, whose metaclass also answers ``get``/``[key]`` (so code written for
Forge's dict works on both), with ``online_lora`` ("patch LoRAs on the fly")."""

import fake_flavor

if fake_flavor.NEO:

    class _DynamicArgsMeta(type):
        def get(cls, key, default=None):
            return getattr(cls, key, default)

        def __getitem__(cls, key):
            return getattr(cls, key)

        def __setitem__(cls, key, value):
            setattr(cls, key, value)

        def __contains__(cls, key):
            return hasattr(cls, key)

    class dynamic_args(metaclass=_DynamicArgsMeta):  # noqa: N801  (Neo's name)
        forge_unet_storage_dtype = None
        embedding_dir = None
        emphasis_name = "Original"
        online_lora = False

else:
    dynamic_args = dict(forge_unet_storage_dtype=None, embedding_dir=None, emphasis_name="Original")

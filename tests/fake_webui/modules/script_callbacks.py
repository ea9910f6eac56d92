"""Callback registry (v1.10.1 semantics: before_ui and script_unloaded run in reverse order)."""

from collections import namedtuple

ScriptCallback = namedtuple("ScriptCallback", ["script", "callback", "name"])
callback_map: dict[str, list[ScriptCallback]] = {
    name: []
    for name in ("callbacks_app_started", "callbacks_model_loaded", "callbacks_ui_tabs", "callbacks_ui_settings",
                 "callbacks_before_ui", "callbacks_script_unloaded", "callbacks_infotext_pasted",
                 "callbacks_ui_train_tabs")
}


def clear_callbacks():
    for callbacks in callback_map.values():
        callbacks.clear()


def add_callback(callbacks, fun, *, name=None, category="unknown"):
    callbacks.append(ScriptCallback("fake", fun, name or getattr(fun, "__name__", "cb")))


def on_app_started(callback, *, name=None):
    add_callback(callback_map["callbacks_app_started"], callback, name=name)


def on_model_loaded(callback, *, name=None):
    add_callback(callback_map["callbacks_model_loaded"], callback, name=name)


def on_ui_tabs(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_tabs"], callback, name=name)


def on_ui_train_tabs(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_train_tabs"], callback, name=name)


def on_ui_settings(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_settings"], callback, name=name)


def on_before_ui(callback, *, name=None):
    add_callback(callback_map["callbacks_before_ui"], callback, name=name)


def on_script_unloaded(callback, *, name=None):
    add_callback(callback_map["callbacks_script_unloaded"], callback, name=name)


def on_infotext_pasted(callback, *, name=None):
    add_callback(callback_map["callbacks_infotext_pasted"], callback, name=name)


def app_started_callback(demo, app):
    for c in callback_map["callbacks_app_started"]:
        c.callback(demo, app)


def model_loaded_callback(sd_model):
    for c in callback_map["callbacks_model_loaded"]:
        c.callback(sd_model)


def ui_tabs_callback():
    res = []
    for c in callback_map["callbacks_ui_tabs"]:
        res += c.callback() or []
    return res


def ui_settings_callback():
    for c in callback_map["callbacks_ui_settings"]:
        c.callback()


def before_ui_callback():
    for c in reversed(callback_map["callbacks_before_ui"]):
        c.callback()


def script_unloaded_callback():
    for c in reversed(callback_map["callbacks_script_unloaded"]):
        c.callback()

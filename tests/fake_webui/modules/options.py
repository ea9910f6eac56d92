"""``modules.options``: OptionInfo and Options with add_option, onchange and default fallback."""


class OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None, section=None,
                 refresh=None, comment_before="", comment_after="", infotext=None, restrict_api=False, category_id=None):
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.onchange = onchange
        self.section = section
        self.refresh = refresh
        self.category_id = category_id
        self.comment_after = comment_after

    def info(self, info):
        self.comment_after += f"<span class='info'>({info})</span>"
        return self

    def needs_reload_ui(self):
        return self

    def needs_restart(self):
        return self


class Options:
    def __init__(self):
        self.__dict__["data_labels"] = {}
        self.__dict__["data"] = {}
        self.__dict__["_onchange"] = {}

    def add_option(self, key, info):
        self.data_labels[key] = info
        if key not in self.data:
            self.data[key] = info.default

    def onchange(self, key, func, call=True):
        self._onchange.setdefault(key, []).append(func)
        if call:
            func()

    def set(self, key, value):
        old = self.data.get(key)
        self.data[key] = value
        if old != value:
            info = self.data_labels.get(key)
            if info is not None and info.onchange is not None:
                info.onchange()
            for func in self._onchange.get(key, []):
                func()
        return True

    def __setattr__(self, key, value):
        self.set(key, value)

    def __getattr__(self, item):
        data = self.__dict__["data"]
        if item in data:
            return data[item]
        labels = self.__dict__["data_labels"]
        if item in labels:
            return labels[item].default
        raise AttributeError(item)

"""``modules.ui_extra_networks``: the cards pages registry."""

extra_pages = []


def register_page(page):
    extra_pages.append(page)


def initialize():
    extra_pages.clear()


class ExtraNetworksPage:
    def __init__(self, title):
        self.title = title
        self.name = title.lower()
        self.extra_networks_tabname = self.name.replace(" ", "_")
        self.items = {}

    def refresh(self):
        pass

    def list_items(self):
        return []

    def allowed_directories_for_previews(self):
        return []

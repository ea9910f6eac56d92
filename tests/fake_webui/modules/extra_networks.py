"""Extra-network registry and prompt parsing (v1.10.1: last registration wins)."""

import re
from collections import defaultdict

extra_network_registry = {}
extra_network_aliases = {}
re_extra_net = re.compile(r"<(\w+):([^>]+)>")


def initialize():
    extra_network_registry.clear()
    extra_network_aliases.clear()


def register_extra_network(extra_network):
    extra_network_registry[extra_network.name] = extra_network


def register_extra_network_alias(extra_network, alias):
    extra_network_aliases[alias] = extra_network


class ExtraNetworkParams:
    def __init__(self, items=None):
        self.items = items or []
        self.positional = []
        self.named = {}
        for item in self.items:
            parts = item.split("=", 2) if isinstance(item, str) else [item]
            if len(parts) == 2:
                self.named[parts[0]] = parts[1]
            else:
                self.positional.append(item)

    def __eq__(self, other):
        return self.items == other.items


class ExtraNetwork:
    def __init__(self, name):
        self.name = name

    def activate(self, p, params_list):
        raise NotImplementedError

    def deactivate(self, p):
        raise NotImplementedError


def lookup_extra_networks(extra_network_data):
    res = {}
    for extra_network_name, extra_network_args in list(extra_network_data.items()):
        extra_network = extra_network_registry.get(extra_network_name, None)
        alias = extra_network_aliases.get(extra_network_name, None)
        if alias is not None and extra_network is None:
            extra_network = alias
        if extra_network is None:
            continue
        res.setdefault(extra_network, []).extend(extra_network_args)
    return res


def activate(p, extra_network_data):
    activated = []
    for extra_network, extra_network_args in lookup_extra_networks(extra_network_data).items():
        try:
            extra_network.activate(p, extra_network_args)
            activated.append(extra_network)
        except Exception as e:  # the WebUI displays the error and goes on
            p.comments[f"error activating {extra_network.name}"] = str(e)
    for extra_network_name, extra_network in extra_network_registry.items():
        if extra_network in activated:
            continue
        try:
            extra_network.activate(p, [])
        except Exception as e:
            p.comments[f"error activating {extra_network_name}"] = str(e)


def deactivate(p, extra_network_data):
    data = lookup_extra_networks(extra_network_data)
    for extra_network in data:
        extra_network.deactivate(p)
    for extra_network_name, extra_network in extra_network_registry.items():
        if extra_network not in data:
            extra_network.deactivate(p)


def parse_prompt(prompt):
    res = defaultdict(list)

    def found(m):
        name, args = m.group(1), m.group(2)
        res[name].append(ExtraNetworkParams(items=args.split(":")))
        return ""

    prompt = re.sub(re_extra_net, found, prompt)
    return prompt, res


def parse_prompts(prompts):
    res = []
    extra_data = None
    for prompt in prompts:
        updated_prompt, parsed_extra_data = parse_prompt(prompt)
        if extra_data is None:
            extra_data = parsed_extra_data
        res.append(updated_prompt)
    return res, extra_data

"""Pure core: parsers, profiles, audit, plans and models. Text and values in, values out; never the machine."""

"""The library behind the commands: data, models, training, scoring, the MeCa steps."""

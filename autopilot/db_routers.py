"""Keep the SQLite channel layer's tables in their own database file, and everything else out of it."""

CHANNELS_APP = "channels_lite"
CHANNELS_DB = "channels"


class ChannelLayerRouter:
    def db_for_read(self, model, **hints):
        return CHANNELS_DB if model._meta.app_label == CHANNELS_APP else None

    def db_for_write(self, model, **hints):
        return CHANNELS_DB if model._meta.app_label == CHANNELS_APP else None

    def allow_relation(self, obj1, obj2, **hints):
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if app_label == CHANNELS_APP:
            return db == CHANNELS_DB
        return db != CHANNELS_DB

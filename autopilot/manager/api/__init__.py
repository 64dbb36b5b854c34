"""REST doors of the manager: viewsets with actions (views.py), their serializers (serializers.py) and
routes (urls.py, included under /api/)."""

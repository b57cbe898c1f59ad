"""The small shared runtime every service uses: settings, topics, codec, metrics, health, faust app."""

"""Local emulators of every supported system's API, serving one seeded business world on 127.0.0.1."""

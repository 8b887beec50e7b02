"""Board tops: the engine wired to the pins of a board."""

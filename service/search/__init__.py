"""Search an archive by example, and re-score it with a probe's head: the service's side of
the window index (`window_index`). `index_windows` is the one write every producer calls."""

from service.search.queries import index_windows

__all__ = ["index_windows"]

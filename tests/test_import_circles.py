"""No module of diffusionlab imports a module that imports it back, directly or through a chain (imports under
`if TYPE_CHECKING:` count: a circle for the type hints is a circle of the design all the same). The graph is grimp's,
the library behind import-linter, built from the source without importing it."""

from __future__ import annotations

import grimp


def import_circles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """Every circle as the chain that closes it, (a, b, ..., a), once per import in it; [] when there is none."""
    found = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                found.append((importer, *back))
    return found


def test_the_package_has_no_import_circle():
    graph = grimp.build_graph("diffusionlab", cache_dir=None)
    assert len(graph.modules) > 50  # the whole package was read, not an empty stand-in
    assert import_circles(graph) == []


def test_a_circle_through_a_chain_is_found():
    """The check sees a circle of two modules and one that closes over several."""
    graph = grimp.build_graph("diffusionlab", cache_dir=None)
    graph.add_import(importer="diffusionlab.errors", imported="diffusionlab.cli")  # cli imports errors, by a chain
    graph.add_import(importer="diffusionlab.training.checkpoints", imported="diffusionlab.training.trainer")
    circles = import_circles(graph)
    closing = {c for c in circles if c[0] == "diffusionlab.errors"}
    assert closing and all(c[1] == "diffusionlab.cli" and c[-1] == "diffusionlab.errors" for c in closing)
    assert (
        "diffusionlab.training.checkpoints",
        "diffusionlab.training.trainer",
        "diffusionlab.training.checkpoints",
    ) in circles

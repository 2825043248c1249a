"""The ops, one module each; `OPS` maps a layer's op name to its class."""

from archon_search.ops.base import Candidate, Op, OpContext, PlannedCall, QueryState
from archon_search.ops.critic import Critic
from archon_search.ops.fuser import Fuser
from archon_search.ops.generator import Generator
from archon_search.ops.ranker import Ranker
from archon_search.ops.unit_test_evaluator import UnitTestEvaluator
from archon_search.ops.unit_test_generator import UnitTestGenerator
from archon_search.ops.verifier import Verifier
from archon_search.ops.voter import Voter

OPS: dict[str, type[Op]] = {
    cls.name: cls for cls in (Generator, Fuser, Critic, Ranker, Verifier, UnitTestGenerator, UnitTestEvaluator, Voter)
}

__all__ = ["OPS", "Candidate", "Op", "OpContext", "PlannedCall", "QueryState"]

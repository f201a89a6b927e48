"""The names a plugin imports (`from imlbench.protocol import Learner, TableData, ...`): the protocol
types of `imlbench.core.protocol`, kept at this path so that plugins written against it keep working."""

from imlbench.core.protocol import (ALL, DEFINITION, FACT, HELD_OUT, HIDDEN, KIND_NAMES, NO_ANSWER,
                                    PROTOCOL_VERSION, QUESTION, SUBSET_CODE, SUBSET_DESIGN, SUBSETS, TAGS,
                                    Examples, ImageData, ImageQueries, Learner, Parameterized, SubsetDesign,
                                    TableData, TableQueries, Task, TaskData, TokenData, TokenQueries, ViewLike,
                                    Vocab)

__all__ = ["ALL", "DEFINITION", "FACT", "HELD_OUT", "HIDDEN", "KIND_NAMES", "NO_ANSWER", "PROTOCOL_VERSION",
           "QUESTION", "SUBSET_CODE", "SUBSET_DESIGN", "SUBSETS", "TAGS", "Examples", "ImageData", "ImageQueries",
           "Learner", "Parameterized", "SubsetDesign", "TableData", "TableQueries", "Task", "TaskData", "TokenData",
           "TokenQueries", "ViewLike", "Vocab"]

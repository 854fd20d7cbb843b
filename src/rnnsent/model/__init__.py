"""The networks: recurrent classifiers, the n-gram branch, their composition and scoring."""

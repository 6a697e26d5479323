"""Classify scikit-learn's handwritten digits with a random forest, in the style of Optuna's scikit-learn
examples but with no tuning code at all: the forest's settings are plain keyword arguments, and the script
prints its validation accuracy.

    python sklearn_digits.py
    research-loop run "Do more trees and deeper trees help a random forest on digits?" --script sklearn_digits.py
"""

import sklearn.datasets
import sklearn.ensemble
import sklearn.model_selection


def main() -> None:
    x, y = sklearn.datasets.load_digits(return_X_y=True)
    x_train, x_valid, y_train, y_valid = sklearn.model_selection.train_test_split(
        x, y, test_size=0.25, random_state=0
    )
    classifier = sklearn.ensemble.RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)
    classifier.fit(x_train, y_train)
    print(f"accuracy={classifier.score(x_valid, y_valid):.4f}")


if __name__ == "__main__":
    main()

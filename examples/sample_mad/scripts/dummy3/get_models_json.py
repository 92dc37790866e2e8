"""Models defined in Python, as MAD trees do it: list_models() returns CustomModel objects."""

from madengine.utils.discover_models import CustomModel


class GeneratedModel(CustomModel):
    """A model whose paths are filled in once it is selected."""

    def update_model(self):
        self.dockerfile = "docker/dummy3"
        self.scripts = "../sample/run.sh"
        self.args = (self.args + " --batch-size 2").strip()


def list_models():
    return [
        CustomModel(
            name="model3",
            dockerfile="docker/dummy3",
            scripts="../sample/run.sh",
            n_gpus="1",
            owner="mad-sample@example.com",
            tags=["dummies", "cpu", "dummy_test_group_3"],
        ),
        GeneratedModel(
            name="model4",
            n_gpus="1",
            owner="mad-sample@example.com",
            tags=["dummies", "cpu", "dummy_test_group_3"],
        ),
    ]

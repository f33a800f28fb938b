"""NNI's "Hello, NAS" (the seeds' NAS example) on torchslim, as written.

Changes from the NNI original: ``nni`` -> ``torchslim`` in the imports, the embedded MNIST
instead of a download, and budgets a CPU can afford (``main``'s arguments).
Run: ``python examples/nas/hello_nas.py``.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchslim as nni
from torchslim.nas.nn.pytorch import LayerChoice, ModelSpace, MutableDropout, MutableLinear

import torchslim.nas.strategy as strategy
from torch.utils.data import DataLoader, Subset
from torchslim.datasets import load_mnist
from torchslim.nas.evaluator import FunctionalEvaluator
from torchslim.nas.experiment import NasExperiment


class DepthwiseSeparableConv(nn.Module):
    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, kernel_size=3, groups=in_ch)
        self.pointwise = nn.Conv2d(in_ch, out_ch, kernel_size=1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class MyModelSpace(ModelSpace):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        # LayerChoice is used to select a layer between Conv2d and DwConv.
        self.conv2 = LayerChoice([
            nn.Conv2d(32, 64, 3, 1),
            DepthwiseSeparableConv(32, 64)
        ], label='conv2')
        # nni.choice is used to select a dropout rate.
        # The result can be used as parameters of `MutableXXX`.
        self.dropout1 = MutableDropout(nni.choice('dropout', [0.25, 0.5, 0.75]))  # choose dropout rate from 0.25, 0.5 and 0.75
        self.dropout2 = nn.Dropout(0.5)
        feature = nni.choice('feature', [64, 128, 256])
        self.fc1 = MutableLinear(9216, feature)
        self.fc2 = MutableLinear(feature, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(self.conv2(x), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.fc2(self.dropout2(F.relu(self.fc1(x))))
        output = F.log_softmax(x, dim=1)
        return output


# the budget knobs (the seed trains on all of MNIST for 3 epochs)
EPOCHS = 3
TRAIN_IMAGES = 8000
TEST_IMAGES = 2000


def train_epoch(model, device, train_loader, optimizer, epoch):
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = loss_fn(output, target)
        loss.backward()
        optimizer.step()
        if batch_idx % 10 == 0:
            print('Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}'.format(
                epoch, batch_idx * len(data), len(train_loader.dataset),
                100. * batch_idx / len(train_loader), loss.item()))


def test_epoch(model, device, test_loader):
    model.eval()
    test_loss = 0
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()

    test_loss /= len(test_loader.dataset)
    accuracy = 100. * correct / len(test_loader.dataset)

    print('\nTest set: Accuracy: {}/{} ({:.0f}%)\n'.format(
          correct, len(test_loader.dataset), accuracy))

    return accuracy


def evaluate_model(model):
    # By v3.0, the model will be instantiated by default.
    device = torch.device('cuda') if torch.cuda.is_available() else torch.device('cpu')
    model.to(device)

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train, test = load_mnist()  # embedded MNIST instead of MNIST('data/mnist', download=True)
    train_loader = DataLoader(Subset(train, range(TRAIN_IMAGES)), batch_size=64, shuffle=True)
    test_loader = DataLoader(Subset(test, range(min(TEST_IMAGES, len(test)))), batch_size=64)

    for epoch in range(EPOCHS):
        # train the model for one epoch
        train_epoch(model, device, train_loader, optimizer, epoch)
        # test the model for one epoch
        accuracy = test_epoch(model, device, test_loader)
        # call report intermediate result. Result can be float or dict
        nni.report_intermediate_result(accuracy)

    # report final test result
    nni.report_final_result(accuracy)


def main(port=8083, experiments_dir=None):
    model_space = MyModelSpace()
    search_strategy = strategy.Random()  # dedup=False if deduplication is not wanted
    evaluator = FunctionalEvaluator(evaluate_model)

    exp = NasExperiment(model_space, evaluator, search_strategy)
    exp.config.max_trial_number = 3   # spawn 3 trials at most
    exp.config.trial_concurrency = 1  # will run 1 trial concurrently
    exp.config.trial_gpu_number = 0   # will not use GPU
    exp.config.experiments_dir = experiments_dir
    exp.run(port=port)

    for model_dict in exp.export_top_models(formatter='dict'):
        print(model_dict)
    return exp


if __name__ == "__main__":
    main().stop()

"""Generator from the PyTorch "DCGAN Tutorial": ConvTranspose2d stack sized by the tutorial's global
hyper-parameters (nz, ngf, nc) from an earlier cell, and its weights_init applied after construction.

Source: https://pytorch.org/tutorials/beginner/dcgan_faces_tutorial.html; ngf reduced, ngpu given a default
(FL sites build the model without arguments).
"""
# %%
import torch
import torch.nn as nn

# %%
# Number of channels in the training images. For color images this is 3
nc = 3
# Size of z latent vector (i.e. size of generator input)
nz = 16
# Size of feature maps in generator
ngf = 8
# Number of GPUs available. Use 0 for CPU mode.
ngpu = 1

# %%
def weights_init(m):
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)

# %% fl_model --input-shape 2,16,1,1
class Generator(nn.Module):
    def __init__(self, ngpu=ngpu):
        super(Generator, self).__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )
        self.apply(weights_init)

    def forward(self, input):
        return self.main(input)

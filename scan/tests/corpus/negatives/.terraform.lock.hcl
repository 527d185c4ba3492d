provider "registry.terraform.io/hashicorp/aws" {
  version = "5.0.0"
  hashes = [
    "h1:pUb8WXQAa1p4PAZG4bKDKbViVL3wPnBhfJl+d+Ppgi4=",
    "zh:3decac4b3a3f2f5c80e83fef001af1b04374d13bbc63eaeb198df6de7406b6bd",
  ]
}

provider "registry.terraform.io/hashicorp/azurerm" {
  version = "5.1.0"
  hashes = [
    "h1:Z7fL1CbFCaE4X0ERxQvWoWZXCw0RFx5TLCW32TQi5jg=",
    "zh:aba5862b32646c75425decc943d239e3a78cf4823285429bf12481490b17677c",
  ]
}

provider "registry.terraform.io/hashicorp/google" {
  version = "5.2.0"
  hashes = [
    "h1:BQL1W/k+n55RKDLpYVTndERv6qMBiI7Oy+v3yE7byF0=",
    "zh:cf421b76cd1e696f609ced92214c99222a74c0908236f3d96c8b4ac8f68b5e90",
  ]
}

provider "registry.terraform.io/hashicorp/random" {
  version = "5.3.0"
  hashes = [
    "h1:Hbow81qFABkvPVO62hFKmxdLZYZZXcsxz1YSc05o5EU=",
    "zh:5b3f876a4aee05f82223fd02bc2d70aeb696b230be576ce92cf8e43a1c23f789",
  ]
}


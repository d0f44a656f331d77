"""Figures USGen reports: SSIM and PSNR (MONAI), per frame and per region."""

from USGenLib.metrics.image import psnr, ssim

__all__ = ["ssim", "psnr"]

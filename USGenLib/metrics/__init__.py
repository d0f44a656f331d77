"""Figures USGen reports: SSIM and PSNR (MONAI), patch-KL and the Frechet distance, per frame and per region."""

from USGenLib.metrics.image import frechet_distance, patch_kl, psnr, ssim

__all__ = ["ssim", "psnr", "patch_kl", "frechet_distance"]

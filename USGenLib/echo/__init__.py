"""Synthetic echocardiograms (EchoFlow): A-VAE latent space, latent image and video flow matching,
a re-identification privacy filter, and the LV segmenter and EF regressor that label every clip."""

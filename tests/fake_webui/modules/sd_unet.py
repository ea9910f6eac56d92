current_unet = None

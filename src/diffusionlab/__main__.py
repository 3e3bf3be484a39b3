from diffusionlab.cli import main

main()

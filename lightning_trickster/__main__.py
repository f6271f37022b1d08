from lightning_trickster.cli import main

if __name__ == "__main__":
    main()

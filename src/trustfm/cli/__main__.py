from trustfm.cli import main

main()
